"""Copy a SQLite database with the online backup API: consistent even while the app writes.

    python3 deploy/sqlite_copy.py SOURCE.sqlite DEST.sqlite

Used by backup.sh and restore.sh (stdlib only, so it runs without the project installed).
"""

import sqlite3
import sys

if len(sys.argv) != 3:
    sys.exit("usage: sqlite_copy.py SOURCE DEST")
source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
dest = sqlite3.connect(sys.argv[2])
with dest:
    source.backup(dest)
dest.close()
source.close()
