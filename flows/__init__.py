"""Prefect flows over the texpress pipeline and library; deployments are declared in ../prefect.yaml."""
