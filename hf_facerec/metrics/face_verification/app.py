"""Hugging Face Space entry point: the gradio widget of the face_verification metric."""

from hf_facerec.metrics import launch_gradio_widget

launch_gradio_widget("face_verification")
