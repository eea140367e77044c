"""The Stylus method: refiner, encoder, retriever, composer, masks, generator. Never imports gradio."""
