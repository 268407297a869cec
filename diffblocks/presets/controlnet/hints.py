"""Expected component types of the ControlNet / T2I-Adapter blocks."""

CONTROLNET = "diffusers.ControlNetModel"
T2I_ADAPTER = "diffusers.T2IAdapter"
