"""Where the agent reads prediction records from: Kafka, or a file for replay."""
