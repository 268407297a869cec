"""Expected component types of the family-agnostic stage blocks, in one place so every block that
names a component declares the same type (validation rejects two different hints for one name)."""

VAE = "diffusers.AutoencoderKL"
#: Any of our schedulers (diffusers' base class name: every sampler fits).
SCHEDULER = "diffusers.SchedulerMixin"
