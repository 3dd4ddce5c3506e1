"""Image studies (diffimage): the Fashion-MNIST benchmark against diffusers' recipe."""
