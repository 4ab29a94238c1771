"""What the tests share and are not tests themselves: repositories, files in the real layouts, servers, process
checks and the builders and readers that more than one test module uses.

Imported as a package (`from support.pipeline_repo import ...`): tests/conftest.py puts tests/ on sys.path
(pytest's default rootdir-relative conftest import). ddp_worker.py is a script that torchrun runs, not imported.
"""
