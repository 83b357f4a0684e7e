"""The metadata keys of a credit export's ONNX graph (`metadata_props`), JSON values.

Kept apart from `tabular_onnx`, which writes them, so that `export` (its metrics.json
repeats the class mapping and the threshold) reads them without importing the graph
builder and its preprocessing (pandas).
"""

THRESHOLD_KEY = "autocompress.threshold"
CALIBRATION_KEY = "autocompress.calibration"
PREPROCESSING_KEY = "autocompress.preprocessing"
CLASSES_KEY = "autocompress.classes"
DECISION_RULE_KEY = "autocompress.decision_rule"
