"""The `effconv` console script: demo, train, evaluate, export, summary (and bench)."""
