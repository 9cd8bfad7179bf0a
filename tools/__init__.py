"""Project tools that are not pipeline stages: the generator of dvc.yaml and envs/*.yaml."""
