"""An index whose projection is whitened by K-FAC factors pays like any index and is recomputed bit for bit from disk."""

from __future__ import annotations

import numpy as np

from ledgerlm.attribution import AttributionIndex, attribute, build_index

from .conftest import SECRET, SOLO


def test_a_kfac_index_pays_the_source_and_reloads_to_the_same_split(trained, tmp_path):
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(trained.model_dir, model_dir)
    plain = build_index(model_dir, trained.records, dim=256, save=False,
                        loaded=(trained.model, trained.tokenizer))
    index = build_index(model_dir, trained.records, dim=256, kfac=True,
                        loaded=(trained.model, trained.tokenizer))
    assert index.config.kfac and not plain.config.kfac
    # the whitening changes the features, not which rows there are
    assert not np.allclose(index.features, plain.features)
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index,
                       tokenizer=trained.tokenizer)
    assert result.contributors[0].contributor == SOLO
    reloaded = AttributionIndex.load(model_dir)
    assert reloaded.config.kfac
    again = attribute(trained.model, SECRET["question"], SECRET["answer"], index=reloaded,
                      tokenizer=trained.tokenizer)
    assert again == result
