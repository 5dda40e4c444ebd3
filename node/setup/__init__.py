"""Setting a node up: node.toml (`config`), its keys and certificates (`pki`), the loaded
`NodeContext`, where its batches run (`executor`: a process pool or a Dask cluster), and the
lock that allows one `serve` per node."""
