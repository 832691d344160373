from reglab.cli import entry

raise SystemExit(entry())
