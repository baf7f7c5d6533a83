"""What can be run: models, datasets, campaign files. Data and loaders, no orchestration."""
