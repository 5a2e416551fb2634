"""selfinstruct: seeds -> prompts -> llm -> parse -> filters -> store -> sft."""

__version__ = "0.1.0"
