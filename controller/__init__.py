"""Host side of joulebench: CLI, images, runners, meters, records. Never imports an ML framework."""
