"""The faces over the hub layer: the command line, the Model Hub app (Gradio) and the background job queue."""
