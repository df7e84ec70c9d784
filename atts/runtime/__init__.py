"""Runtime: sample context, runner, session, store, summary and progress display."""
