"""Text generators: human documents from text that ships with Python or Debian, small causal
LMs (GPT-2 architecture) trained here, any transformers causal LM by path, and the text corpus
recipe. ``import generators.text`` stays light: torch and transformers load on first use."""
