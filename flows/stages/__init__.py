"""One build stage per dataset kind. A stage is a Prefect task
``(spec_path, snapshot_ids, version) -> StageResult`` that stages its rows in the held
warehouse; ``STAGES`` lists them in the order a build runs them."""
