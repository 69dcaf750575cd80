"""Lance storage for trace datasets: schemas, one-commit writer, readers and queries."""

import os
import warnings

# Lance warns on every fragment write to a table that is created at commit time; that is the design.
os.environ.setdefault("LANCE_LOG", "error")

# `import lance` registers an os.register_at_fork hook that warns "lance is not fork-safe" before any
# fork of the process. The forks here are fork+exec of other programs (ray.init starting its GCS and
# API servers through subprocess with a preexec_fn), which never run lance in the child, so the
# warning is noise on every `mu0 ingest`. Only that message, from the lance module, is ignored.
warnings.filterwarnings("ignore", message=r"lance is not fork-safe", category=UserWarning, module=r"lance$")
