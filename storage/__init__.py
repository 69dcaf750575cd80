"""Lance storage for trace datasets: schemas, one-commit writer, readers and queries."""

import os

# Lance warns on every fragment write to a table that is created at commit time; that is the design.
os.environ.setdefault("LANCE_LOG", "error")
