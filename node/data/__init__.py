"""The node's data: identifiers and their elements, ingest, the SQLite store (all SQL lives
here), erasure and retention, the audit log, sample lists."""
