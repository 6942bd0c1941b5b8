"""Multi-task learning: the shared model (encoder + one head per task)."""
