"""ComfyUI glue: loader nodes and routes. Filled in by the ComfyUI face; empty mappings until then."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
