-- Undoes 019_dashboard_sessions (ops/rollback.sh): everyone signed in to the dashboard signs in again.
DROP TABLE IF EXISTS dashboard_sessions;
