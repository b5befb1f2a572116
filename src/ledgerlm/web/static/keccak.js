/* keccak256 (the original Keccak padding Ethereum uses, not SHA3-256) and OpenZeppelin StandardMerkleTree
   roots, written for the ledgerlm dashboard so a browser can recompute a Datanet version's root itself.
   Lanes are 64-bit words held as two 32-bit halves (lo, hi). */
(function (global) {
  "use strict";
  var RC = [
    [0x00000001, 0x00000000], [0x00008082, 0x00000000], [0x0000808a, 0x80000000], [0x80008000, 0x80000000],
    [0x0000808b, 0x00000000], [0x80000001, 0x00000000], [0x80008081, 0x80000000], [0x00008009, 0x80000000],
    [0x0000008a, 0x00000000], [0x00000088, 0x00000000], [0x80008009, 0x00000000], [0x8000000a, 0x00000000],
    [0x8000808b, 0x00000000], [0x0000008b, 0x80000000], [0x00008089, 0x80000000], [0x00008003, 0x80000000],
    [0x00008002, 0x80000000], [0x00000080, 0x80000000], [0x0000800a, 0x00000000], [0x8000000a, 0x80000000],
    [0x80008081, 0x80000000], [0x00008080, 0x80000000], [0x80000001, 0x00000000], [0x80008008, 0x80000000]];
  // rotation of lane x + 5y
  var ROT = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];
  var RATE = 136; // bytes absorbed per permutation for a 256-bit output

  function rotl(lo, hi, n, out, i) {
    if (n === 0) { out[2 * i] = lo; out[2 * i + 1] = hi; return; }
    if (n >= 32) { var t = lo; lo = hi; hi = t; n -= 32; }
    if (n === 0) { out[2 * i] = lo; out[2 * i + 1] = hi; return; }
    out[2 * i] = ((lo << n) | (hi >>> (32 - n))) >>> 0;
    out[2 * i + 1] = ((hi << n) | (lo >>> (32 - n))) >>> 0;
  }

  function permute(s) {
    var c = new Uint32Array(10), d = new Uint32Array(10), b = new Uint32Array(50), x, y, i, round;
    for (round = 0; round < 24; round++) {
      for (x = 0; x < 5; x++) {
        c[2 * x] = s[2 * x] ^ s[2 * x + 10] ^ s[2 * x + 20] ^ s[2 * x + 30] ^ s[2 * x + 40];
        c[2 * x + 1] = s[2 * x + 1] ^ s[2 * x + 11] ^ s[2 * x + 21] ^ s[2 * x + 31] ^ s[2 * x + 41];
      }
      for (x = 0; x < 5; x++) {
        var p = (x + 4) % 5, n = (x + 1) % 5;
        rotl(c[2 * n], c[2 * n + 1], 1, d, x);
        d[2 * x] ^= c[2 * p]; d[2 * x + 1] ^= c[2 * p + 1];
      }
      for (i = 0; i < 25; i++) { s[2 * i] ^= d[2 * (i % 5)]; s[2 * i + 1] ^= d[2 * (i % 5) + 1]; }
      for (x = 0; x < 5; x++) {
        for (y = 0; y < 5; y++) {
          var from = x + 5 * y, to = y + 5 * ((2 * x + 3 * y) % 5);
          rotl(s[2 * from], s[2 * from + 1], ROT[from], b, to);
        }
      }
      for (y = 0; y < 5; y++) {
        for (x = 0; x < 5; x++) {
          var k = x + 5 * y, k1 = (x + 1) % 5 + 5 * y, k2 = (x + 2) % 5 + 5 * y;
          s[2 * k] = b[2 * k] ^ (~b[2 * k1] & b[2 * k2]);
          s[2 * k + 1] = b[2 * k + 1] ^ (~b[2 * k1 + 1] & b[2 * k2 + 1]);
        }
      }
      s[0] ^= RC[round][0]; s[1] ^= RC[round][1];
    }
  }

  function keccak256(bytes) {
    var s = new Uint32Array(50), padded = Math.floor(bytes.length / RATE + 1) * RATE;
    var block = new Uint8Array(padded);
    block.set(bytes);
    block[bytes.length] ^= 0x01;
    block[padded - 1] ^= 0x80;
    for (var off = 0; off < padded; off += RATE) {
      for (var i = 0; i < RATE / 4; i++) {
        var j = off + 4 * i;
        s[i] ^= (block[j] | (block[j + 1] << 8) | (block[j + 2] << 16) | (block[j + 3] << 24)) >>> 0;
      }
      permute(s);
    }
    var out = new Uint8Array(32);
    for (var k = 0; k < 8; k++) {
      out[4 * k] = s[k] & 0xff; out[4 * k + 1] = (s[k] >>> 8) & 0xff;
      out[4 * k + 2] = (s[k] >>> 16) & 0xff; out[4 * k + 3] = (s[k] >>> 24) & 0xff;
    }
    return out;
  }

  function fromHex(hex) {
    hex = hex.replace(/^0x/, "");
    if (hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) throw new Error("not a hex string: " + hex);
    var out = new Uint8Array(hex.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function toHex(bytes) {
    var s = "0x";
    for (var i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return s;
  }

  function compare(a, b) {
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
  }

  // abi.encode of one static value as a 32-byte word: bytes32 as is, an address right-aligned.
  function abiWord(type, value) {
    var word = new Uint8Array(32), raw = fromHex(value);
    if (type === "bytes32" && raw.length === 32) word.set(raw);
    else if (type === "address" && raw.length === 20) word.set(raw, 12);
    else throw new Error("cannot encode " + value + " as " + type);
    return word;
  }

  // OpenZeppelin StandardMerkleTree: leaf = keccak256(keccak256(abi.encode(values))); pairs sorted; leaves
  // sorted by hash and laid out from the end of one array, so the root is the same as the Python tree's.
  function standardMerkleRoot(types, rows) {
    if (!rows.length) throw new Error("a Merkle tree needs at least one leaf");
    var leaves = rows.map(function (row) {
      var encoded = new Uint8Array(32 * types.length);
      types.forEach(function (t, i) { encoded.set(abiWord(t, row[i]), 32 * i); });
      return keccak256(keccak256(encoded));
    }).sort(compare);
    var size = 2 * leaves.length - 1, tree = new Array(size);
    leaves.forEach(function (leaf, i) { tree[size - 1 - i] = leaf; });
    for (var n = size - 1 - leaves.length; n >= 0; n--) {
      var a = tree[2 * n + 1], b = tree[2 * n + 2], joined = new Uint8Array(64);
      if (compare(a, b) <= 0) { joined.set(a); joined.set(b, 32); } else { joined.set(b); joined.set(a, 32); }
      tree[n] = keccak256(joined);
    }
    return toHex(tree[0]);
  }

  function uintWord(value) {
    var hex = BigInt(value).toString(16);
    if (hex.length > 64 || BigInt(value) < 0n) throw new Error("not a uint256: " + value);
    return fromHex("0".repeat(64 - hex.length) + hex);
  }

  // A validator's commit: keccak256(abi.encode(uint256 roundId, address validator, uint256[] ids ascending,
  // uint8[] scores, bytes32 salt)), the same bytes ledgerlm.validation.consensus.commit_hash hashes.
  function voteCommit(roundId, validator, votes, salt) {
    var ids = Object.keys(votes).map(Number).sort(function (a, b) { return a - b; });
    var n = ids.length, words = [];
    words.push(uintWord(roundId), abiWord("address", validator), uintWord(5 * 32), uintWord(5 * 32 + 32 * (1 + n)),
               abiWord("bytes32", salt));
    words.push(uintWord(n));
    ids.forEach(function (id) { words.push(uintWord(id)); });
    words.push(uintWord(n));
    ids.forEach(function (id) { words.push(uintWord(votes[id])); });
    var encoded = new Uint8Array(32 * words.length);
    words.forEach(function (w, i) { encoded.set(w, 32 * i); });
    return toHex(keccak256(encoded));
  }

  global.ledgerlmHash = { keccak256: keccak256, fromHex: fromHex, toHex: toHex, standardMerkleRoot: standardMerkleRoot,
                          voteCommit: voteCommit };
})(typeof window !== "undefined" ? window : globalThis);
