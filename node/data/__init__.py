"""The node's data: identifiers and their elements, ingest, the SQLite store (all SQL lives
here), the audit log, sample lists."""
