"""Sessions, free of any transport: what each side of a session does, and what it records.

- `messages`: the messages of a mutual/count session and the `PeerStream` they travel on.
- `mutual_initiator`, `mutual_responder`: the two sides of a mutual or count session.
- `screen_initiator`, `screen_responder`: the two sides of screening (fetch, query),
  with the responder's key epochs and encoded sets.
- `records`: the one place that writes sessions, hits, disclosures and session audit
  entries, and says why a session failed.
- `answering`: what a serving node shares between the calls it answers (limits, lists).
- `labels`, `results`: labels of matched records; what an initiator reports.
- `erasure`: removing a record, dropping a list, expiring records past their retention,
  each with its screening epoch rotated and audited in one transaction.
- `hits`: listing and acknowledging hits, audited (the CLI's and the local API's).
- `observe`: hooks through which a serving process's metrics count sessions and calls.

`node.rpc` carries these messages over gRPC; nothing here imports it.
"""
