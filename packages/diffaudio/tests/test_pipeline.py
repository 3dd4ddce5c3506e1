"""The spectrogram model and pipeline: conditioning, training on real recordings, repeatable
sampling, inpainting (fill a gap, continue a recording), save and load."""

import pytest
import torch

from diffaudio.model import AudioUNet, audio_unet_config
from diffaudio.pipeline import AudioPipeline, clip_spectrograms, keep_mask, train_audio_diffusion
from diffaudio.spectrogram import SpectrogramConfig
from diffcore.io import save_pretrained
from diffcore.training import TrainConfig

SPEC = SpectrogramConfig(frames=16)
LABELS = ("0", "1", "2")
SPEAKERS = ("ann", "bob")


def random_model(seed: int = 0) -> AudioUNet:
    """A tiny model with random (not zero) output layer, so samples depend on the noise."""
    torch.manual_seed(seed)
    model = AudioUNet(audio_unet_config("tiny", SPEC, label_names=LABELS, speaker_names=SPEAKERS))
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    return model.eval()


def test_the_model_takes_class_and_speaker_conditions_with_null_values():
    model = random_model()
    x, t = torch.randn(3, 1, SPEC.n_mels, SPEC.frames), torch.rand(3)
    out = model(x, t, labels=torch.tensor([0, 2, 3]), speakers=torch.tensor([1, 2, 0]))
    assert out.shape == x.shape
    by_speaker = model(x, t, labels=torch.tensor([0, 0, 0]), speakers=torch.tensor([0, 1, 2]))
    assert not torch.allclose(by_speaker[0], by_speaker[1])  # the speaker changes the output
    with pytest.raises(ValueError, match="speaker ids must lie in"):
        model(x, t, speakers=torch.tensor([0, 1, 5]))
    plain = AudioUNet(audio_unet_config("tiny", SPEC))
    with pytest.raises(ValueError, match="without class labels"):
        plain(x, t, labels=torch.tensor([0, 0, 0]))


def test_seeds_make_sampling_repeatable():
    pipe = AudioPipeline(random_model())
    labels = torch.tensor([0, 1, 2, 3])  # 3 = any
    run = lambda seed, batch=64: pipe.sample(
        4, labels=labels, steps=4, guidance=2.0, seed=seed, batch_size=batch
    )
    a, b, c = run(7), run(7), run(8)
    torch.testing.assert_close(a, run(7, batch=1), rtol=0, atol=1e-5)
    assert a.shape == (4, 1, SPEC.n_mels, SPEC.frames)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(pipe.to_waveform(a[:1]), pipe.to_waveform(a[:1]))  # Griffin-Lim seeded


def test_inpainting_keeps_the_known_frames_and_fills_the_rest():
    pipe = AudioPipeline(random_model())
    g = torch.Generator().manual_seed(0)
    known = torch.rand(2, 1, SPEC.n_mels, SPEC.frames, generator=g) * 2 - 1
    gap = keep_mask(SPEC, gap=(0.05, 0.15))
    assert gap.sum() < SPEC.frames and gap[0] and gap[-1]
    regenerate = ~gap.reshape(1, 1, 1, -1)
    filled = pipe.inpaint(known, regenerate, steps=4, labels=torch.tensor([1, 1]))
    assert torch.equal(filled[..., gap], known[..., gap])
    assert not torch.allclose(filled[..., ~gap], known[..., ~gap])
    cont = keep_mask(SPEC, keep_until=0.1)
    assert cont[: SPEC.frames_for(0.1)].all() and not cont[SPEC.frames_for(0.1) :].any()
    with pytest.raises(ValueError, match="exactly one"):
        keep_mask(SPEC)
    with pytest.raises(ValueError, match="gap"):
        keep_mask(SPEC, gap=(0.2, 0.1))


def test_a_saved_pipeline_loads_back_and_samples_the_same(tmp_path):
    model = random_model()
    save_pretrained(model, tmp_path / "model")
    loaded = AudioPipeline.from_pretrained(tmp_path / "model")
    assert loaded.model.config == model.config
    run = lambda pipe: pipe.sample(2, steps=3, seed=1)
    torch.testing.assert_close(run(loaded), run(AudioPipeline(model)))


def test_edit_renoises_part_way_and_wrong_conditions_are_refused():
    pipe = AudioPipeline(random_model())
    source = torch.zeros(2, 1, SPEC.n_mels, SPEC.frames)
    weak, strong = (pipe.edit(source, s, steps=8, seed=0) for s in (0.1, 1.0))
    assert (weak - source).abs().mean() < (strong - source).abs().mean()
    with pytest.raises(ValueError, match="labels must have shape"):
        pipe.sample(2, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="trained without speakers"):
        AudioPipeline(AudioUNet(audio_unet_config("tiny", SPEC))).sample(1, speakers=[0])


def test_a_tiny_model_loss_falls_on_64_real_recordings(shared_data, tmp_path):
    from diffaudio.data import load_audio

    spec = SpectrogramConfig()
    clips = load_audio(
        shared_data / "fsdd" / "recordings",
        sample_rate=8000,
        num_samples=spec.num_samples,
        pattern="{label}_{speaker}_{index}",
        progress=False,
    )
    clips = clips.subset(range(0, 3000, 3000 // 64)[:64])  # every digit and speaker
    assert len(clips) == 64 and len(set(clips.labels.tolist())) == 10
    assert clip_spectrograms(clips, spec).shape == (64, 1, spec.n_mels, spec.frames)
    config = TrainConfig(
        steps=40, batch_size=16, lr=3e-3, ema_decay=None, log_every=10, checkpoint_every=40
    )
    result = train_audio_diffusion(
        clips, tmp_path, config, spectrogram=spec, preset="tiny", progress=False
    )
    first, last = result.log[0].loss, result.log[-1].loss
    assert last < 0.6 * first, [round(r.loss, 3) for r in result.log]
    pipe = AudioPipeline.from_pretrained(result.final_model)
    assert pipe.model.config.label_names == tuple("0123456789")
    assert pipe.model.config.speaker_names == clips.speaker_names


def test_a_flow_matching_model_saves_its_process_and_samples(tmp_path):
    from diffcore.processes import process_fields
    from diffcore.schedules import FlowSchedule

    config = audio_unet_config("tiny", SPEC, label_names=LABELS, **process_fields("flow"))
    model = AudioUNet(config)
    assert isinstance(model.process.schedule, FlowSchedule)
    assert (model.process.prediction, model.process.time_sampling) == ("flow", "logit_normal")
    save_pretrained(model, tmp_path / "flow")
    pipe = AudioPipeline.from_pretrained(tmp_path / "flow")
    assert pipe.model.config == config
    samples = pipe.sample(2, labels=torch.tensor([0, 1]), steps=3, seed=0)
    assert samples.shape == (2, 1, SPEC.n_mels, SPEC.frames) and samples.abs().max() <= 1


def test_distillation_trains_rounds_whose_folders_sample_in_their_own_steps(tmp_path):
    from diffaudio import distill_audio_diffusion
    from diffaudio.data import AudioClips

    g = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(6, SPEC.num_samples, generator=g)
    clips = AudioClips(waves, SPEC.sample_rate, torch.tensor([0, 1, 2] * 2), label_names=LABELS)
    config = TrainConfig(steps=3, batch_size=4, lr=1e-3, ema_decay=None, log_every=3)
    teacher = AudioUNet(audio_unet_config("tiny", SPEC, label_names=LABELS))
    folders = distill_audio_diffusion(
        teacher, clips, tmp_path, config, teacher_steps=4, steps=2, progress=False
    )
    assert [f.parent.name for f in folders] == ["steps_2"]
    pipe = AudioPipeline.from_pretrained(folders[0])
    steps = []
    spec = pipe.sample(2, labels=torch.tensor([0, 1]), callback=lambda s, x, d: steps.append(s))
    assert spec.shape == (2, 1, SPEC.n_mels, SPEC.frames)
    assert [s.total for s in steps] == [2, 2]


def test_experts_per_noise_range_sample_together_and_not_alone(tmp_path):
    def expert(lo: float, hi: float) -> AudioUNet:
        config = audio_unet_config("tiny", SPEC, label_names=LABELS, time_range=(lo, hi))
        return AudioUNet(config).eval()

    low, high = expert(0.0, 0.3), expert(0.3, 1.0)
    assert (low.process.t_max, high.process.t_min) == (0.3, 0.3)
    save_pretrained(high, tmp_path / "high")
    pipe = AudioPipeline(low, experts=[tmp_path / "high"])
    spec = pipe.sample(2, labels=torch.tensor([0, 1]), steps=4, seed=0)
    assert spec.shape == (2, 1, SPEC.n_mels, SPEC.frames) and torch.isfinite(spec).all()
    with pytest.raises(ValueError, match="split the times"):
        AudioPipeline(low)
    with pytest.raises(ValueError, match="time range"):
        audio_unet_config("tiny", SPEC, time_range=(0.5, 0.5))


def test_a_coarse_base_and_a_stage_sample_a_full_spectrogram_in_order():
    from diffcore.generation import CascadePipeline

    coarse = (SPEC.n_mels // 2, SPEC.frames // 2)
    torch.manual_seed(0)
    base = AudioUNet(audio_unet_config("tiny", SPEC, label_names=LABELS, size=coarse)).eval()
    stage = AudioUNet(audio_unet_config("tiny", SPEC, label_names=LABELS, low_res=coarse)).eval()
    assert stage.config.unet.low_res_channels == 1 and base.config.shape == coarse
    torch.nn.init.normal_(stage.unet.conv_out.weight, std=0.05)  # (zero at first: no input shows)
    base_pipe, stage_pipe = AudioPipeline(base), AudioPipeline(stage)
    labels = torch.tensor([0, 2])
    small = base_pipe.sample(2, labels=labels, steps=3, seed=0)
    assert small.shape == (2, 1, *coarse)
    assert base_pipe.to_waveform(small).shape == (2, SPEC.num_samples)  # heard at full size
    cascade = CascadePipeline(base_pipe, [stage_pipe])
    full = cascade.sample(2, labels=labels, steps=3, seed=0)
    assert full.shape == (2, 1, SPEC.n_mels, SPEC.frames)
    assert torch.equal(cascade.samples[0], small)  # the stage was given the base's samples
    # the stage reads its coarse input: a different one changes what it draws
    other = stage_pipe.sample(2, labels=labels, steps=3, seed=0, low_res=-small)
    assert not torch.allclose(other, full)
    with pytest.raises(ValueError, match="needs low_res="):
        stage_pipe.sample(2, steps=3)
    with pytest.raises(ValueError, match="size must be"):
        audio_unet_config("tiny", SPEC, size=(SPEC.n_mels + 1, 4))


def test_a_stage_trains_on_clips_with_their_coarse_spectrograms(tmp_path):
    from diffaudio.data import AudioClips

    waves = 0.1 * torch.randn(6, SPEC.num_samples)
    clips = AudioClips(waves, SPEC.sample_rate, torch.tensor([0, 1, 2] * 2), label_names=LABELS)
    config = TrainConfig(steps=2, batch_size=3, log_every=1)
    coarse = {"low_res": (SPEC.n_mels // 2, SPEC.frames // 2)}
    result = train_audio_diffusion(
        clips,
        tmp_path / "stage",
        config,
        spectrogram=SPEC,
        preset="tiny",
        progress=False,
        settings=coarse,
    )
    pipe = AudioPipeline.from_pretrained(result.final_model)
    assert pipe.model.config.low_res == coarse["low_res"]
    base = train_audio_diffusion(
        clips,
        tmp_path / "base",
        config,
        spectrogram=SPEC,
        preset="tiny",
        progress=False,
        settings={"size": coarse["low_res"]},
    )
    assert AudioPipeline.from_pretrained(base.final_model).sample_shape() == (1, *coarse["low_res"])
