"""Recording a model's residual-stream activations over a corpus (``sae-core extract``)."""
