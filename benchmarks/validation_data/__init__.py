"""Data for the validation benchmark: clean records from several sources, planted defects, validator populations."""
