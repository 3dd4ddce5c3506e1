"""Audio studies (diffaudio): the spoken-digit benchmark and a judge-free listening check."""
