"""The team's tracking server (team_server.py, run as a script; docs/team-server.md) and the launchers of
throwaway ones on loopback that the tests and the benchmarks share (local_postgres.py, local_team.py)."""
