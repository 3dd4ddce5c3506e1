"""Text studies (difftext): the Tiny Shakespeare benchmark, training screens, ELBO tightness."""
