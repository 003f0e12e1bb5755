"""Where results live: a local directory or a URI (``location``), one writer at a
time (``locking``), a sweep's results directory (``results``), a nightly history
(``history``), the record dataclasses (``records``) and their Parquet schemas
(``schemas``), and the rewrite of older files to the current schema (``migrate``)."""
