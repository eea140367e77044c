"""Front ends: the Gradio web app and the command line (python -m stylus_ui)."""
