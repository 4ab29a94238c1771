"""The one place DVCLive is opened, for the train and evaluate stages."""

from __future__ import annotations

from e2e.errors import E2EError


def open_live(path):
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        # dvcyaml=False: dvc.yaml is written by hand and must not be rewritten by DVCLive
        return Live(dir=str(path), dvcyaml=False, save_dvc_exp=False, report=None)
    except SCMError as exc:  # DVCLive 3.49 fails inside a git repository that has no commit yet
        raise E2EError(f"{path}: DVCLive cannot log here ({exc}); make a first `git commit`") from None
