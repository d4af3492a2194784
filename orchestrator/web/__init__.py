"""`orchestrator web`: a read-only site over the sweeps' database (sweeps, leaderboards, plots, runs, the fleet).

Every page is rendered from the same data its JSON twin (`/api/...`) returns, and that data comes from the
layers the CLI uses (`orchestrator.leaderboard`, `orchestrator.analysis`, `orchestrator.fleet_view`, `db.crud`):
the site shows the numbers `orchestrator leaderboard --format json` prints.
"""
