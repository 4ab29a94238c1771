"""One raw file's conversion (read, preprocess, sparsify, write a part), shared by the convert stage and
e2e predict."""
