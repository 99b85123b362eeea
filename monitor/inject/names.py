"""The names the injector writes into a pod: annotations, containers, volumes, paths and
limits."""

from __future__ import annotations

import re

API_VERSION = "admission.k8s.io/v1"
PREFIX = "driftline.io/"
ANNOTATION_INJECT = PREFIX + "inject"
ANNOTATION_INJECTED = PREFIX + "injected"
# Why a pod that asked for the sidecar did not get it (failure policy Ignore).
ANNOTATION_ERROR = PREFIX + "injection-error"
ANNOTATION_CONFIG = PREFIX + "config"
ANNOTATION_MODEL = PREFIX + "model"
ANNOTATION_TOPIC = PREFIX + "topic"
ANNOTATION_BOOTSTRAP = PREFIX + "bootstrap-servers"
ANNOTATION_GROUP = PREFIX + "group-id"
ANNOTATION_REFERENCE = PREFIX + "reference"
ANNOTATION_REFERENCE_CONFIGMAP = PREFIX + "reference-configmap"
ANNOTATION_REFERENCE_SHA256 = PREFIX + "reference-sha256"
ANNOTATION_RECORD_FORMAT = PREFIX + "record-format"
ANNOTATION_WINDOW = PREFIX + "window"
# "both": the sidecars of a model elect one judge (aggregation.role both); "none": each
# judges its own partitions (docs/kubernetes.md, "Several replicas of a model").
ANNOTATION_AGGREGATION = PREFIX + "aggregation"
AGGREGATION_ROLES = ("none", "both")
# Annotations that build monitor.yaml; ignored (with a warning) next to driftline.io/config.
CONFIG_ANNOTATIONS = (
    ANNOTATION_MODEL,
    ANNOTATION_TOPIC,
    ANNOTATION_BOOTSTRAP,
    ANNOTATION_GROUP,
    ANNOTATION_REFERENCE,
    ANNOTATION_REFERENCE_SHA256,
    ANNOTATION_RECORD_FORMAT,
    ANNOTATION_WINDOW,
    ANNOTATION_AGGREGATION,
)
# Labels that name the model when driftline.io/model does not (KServe sets the second).
MODEL_LABELS = ("app.kubernetes.io/name", "serving.kserve.io/inferenceservice", "app")

CONTAINER_NAME = "driftline"
INIT_CONTAINER_NAME = "driftline-config"
CONFIG_VOLUME = "driftline-config"
STATE_VOLUME = "driftline-state"
REFERENCE_VOLUME = "driftline-reference"
CONFIG_DIR = "/etc/driftline"
CONFIG_FILE = CONFIG_DIR + "/monitor.yaml"
REFERENCE_DIR = "/etc/driftline-reference"
DEFAULT_REFERENCE_FILE = "reference.json.gz"
STATE_DIR = "/var/lib/driftline"
# IANA service names are at most 15 characters: "driftline-metrics" would be refused.
METRICS_PORT_NAME = "dl-metrics"
MONITOR_YAML_ENV = "DRIFTLINE_MONITOR_YAML"
# The emptyDir holding monitor.yaml and a fetched reference profile.
CONFIG_VOLUME_LIMIT = "512Mi"
MAX_ERROR_CHARS = 1024

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
