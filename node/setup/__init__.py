"""Setting a node up: node.toml (`config`), its keys and certificates (`pki`), the loaded
`NodeContext`, and the lock that allows one `serve` per node."""
