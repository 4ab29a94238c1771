"""Reading results beside the pipeline: e2e summary, e2e compare, and the pull-request review."""
