"""Domain code shared by the offline build and the Lambda functions.

Shipped in the Lambda code layer; imports only numpy, onnxruntime, tokenizers,
hnswlib, pydantic and the AWS SDK (never torch).
"""

__version__ = "0.1.0"
