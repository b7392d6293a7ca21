"""Suite-wide settings: every test runs with JAX's key-reuse checker on."""
import jax

jax.config.update("jax_debug_key_reuse", True)
