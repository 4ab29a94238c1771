"""One module per DVC stage (dvc.yaml), each with main(params, name, paths): download, convert, split,
train, evaluate, export. Only stages open DVCLive."""
