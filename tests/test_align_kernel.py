"""Projection kernel against independent float64 numpy sums, images and finite differences."""

import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import tensorflow as tf
from gmmrefine.align import kernel as project
from gmmrefine.align.rings import gather_rings, ring_pixels
from gmmrefine.data import rotations as geometry
from gmmrefine.fourier.grids import fft2c
from gmmrefine.gmm.model import GMM, projected_gmm_image, render_map, render_projection
from gmmrefine.io.mrc import write_map
from scipy.spatial.transform import Rotation

BOX, APIX = 32, 1.7


def random_gmm(rng, n=40, spread_A=9.0, width_lo=0.6, width_hi=2.5):
    return GMM(rng.normal(scale=spread_A, size=(n, 3)), rng.uniform(0.2, 2.0, n),
               rng.uniform(width_lo, width_hi, n))


def random_poses(rng, n):
    rotation = Rotation.random(n, random_state=rng).as_matrix()
    origin = rng.normal(scale=2.0, size=(n, 2))
    dtheta = rng.normal(scale=3.0, size=(n, 3))
    dshift = rng.normal(scale=0.7, size=(n, 2))
    return rotation, origin, dtheta, dshift


def brute_force_spectrum(gmm, rotation, origin_A, dtheta_deg, dshift_px, kx, ky, box, apix):
    """Float64 sum over Gaussians and pixels, pose composed with scipy (independent of TF)."""
    out = []
    for a, o, d, s in zip(rotation, origin_A, dtheta_deg, dshift_px):
        pose = Rotation.from_rotvec(np.radians(d)).as_matrix() @ a
        p = (gmm.centres_A @ pose.T)[:, :2] - (o + apix * s)
        k = np.stack([kx, ky], axis=1) / (box * apix)
        decay = np.exp(-2 * np.pi ** 2 * gmm.widths_A[:, None] ** 2 * (k ** 2).sum(1)[None])
        out.append(np.sum(gmm.amplitudes[:, None] * decay * np.exp(-2j * np.pi * p @ k.T), axis=0))
    return np.array(out)


def tensors(*arrays):
    return [tf.constant(np.asarray(a), tf.float32) for a in arrays]


def kernel_spectrum(gmm, poses, pixels, method):
    re, im = project.model_spectrum(*project.gmm_tensors(gmm), *tensors(*poses), pixels, APIX,
                                    method)
    return re.numpy().astype(float) + 1j * im.numpy().astype(float)


def ring_relative_error(got, want, ring):
    """max |got - want| over each pixel, relative to the rms |want| of the pixel's ring."""
    rms = np.sqrt(np.array([[np.mean(np.abs(w[ring == r]) ** 2) for r in ring] for w in want]))
    return np.max(np.abs(got - want) / rms)


@pytest.mark.parametrize("method", ["direct", "separable"])
def test_spectrum_matches_float64_brute_force(method):
    rng = np.random.default_rng(0)
    gmm = random_gmm(rng)
    poses = random_poses(rng, 3)
    pixels = ring_pixels(BOX, 1, BOX // 2)
    want = brute_force_spectrum(gmm, *poses, pixels.kx, pixels.ky, BOX, APIX)
    got = kernel_spectrum(gmm, poses, pixels, method)
    assert ring_relative_error(got, want, pixels.ring) <= 1e-4


def test_spectrum_is_the_fft_of_a_finely_sampled_projection():
    """fft2c of the projection sampled at apix/4 (times the sample area) is F(k) plus
    aliases at 4/apix, below 1e-9 for these widths: the normalisation is fft2c's."""
    rng = np.random.default_rng(1)
    gmm = random_gmm(rng, n=25, spread_A=6.0, width_lo=1.0)
    rotation, origin, _, _ = random_poses(rng, 1)
    poses = (rotation, origin, np.zeros((1, 3)), np.zeros((1, 2)))
    pixels = ring_pixels(BOX, 1, BOX // 2)
    fine, h = 4 * BOX, APIX / 4
    t = (np.arange(fine) - fine // 2) * h
    p = (gmm.centres_A @ rotation[0].T)[:, :2] - origin[0]
    gx = np.exp(-(t[None] - p[:, :1]) ** 2 / (2 * gmm.widths_A[:, None] ** 2))
    gy = np.exp(-(t[None] - p[:, 1:]) ** 2 / (2 * gmm.widths_A[:, None] ** 2))
    density = (gy * (gmm.amplitudes / (2 * np.pi * gmm.widths_A ** 2))[:, None]).T @ gx
    spectrum = fft2c(density * h * h)
    c = fine // 2
    want = spectrum[c + pixels.ky, c + pixels.kx][None]
    got = kernel_spectrum(gmm, poses, pixels, "separable")
    assert ring_relative_error(got, want, pixels.ring) <= 1e-4
    assert spectrum[c, c].real == pytest.approx(gmm.amplitudes.sum(), rel=1e-9)


def test_pixel_integrated_image_differs_by_the_pixel_sinc_only():
    """The DFT of an image of pixel-integrated density is F(k) sinc(kx apix) sinc(ky apix)
    up to aliasing, which for widths >= 1.2 px is below 1e-5 out to half Nyquist."""
    rng = np.random.default_rng(2)
    box = 64                                  # room enough that no mass leaves the image
    gmm = random_gmm(rng, n=25, spread_A=5.0, width_lo=1.2 * APIX, width_hi=2.0 * APIX)
    rotation, origin, _, _ = random_poses(rng, 1)
    image = projected_gmm_image(gmm, rotation[0], origin[0], box, APIX)
    assert image.sum() == pytest.approx(gmm.amplitudes.sum(), rel=1e-9)
    pixels = ring_pixels(box, 1, box // 4)
    data = gather_rings(fft2c(image), pixels)
    poses = (rotation, origin, np.zeros((1, 3)), np.zeros((1, 2)))
    sinc = np.sinc(pixels.kx / box) * np.sinc(pixels.ky / box)
    got = kernel_spectrum(gmm, poses, pixels, "separable") * sinc
    assert ring_relative_error(got, data, pixels.ring) <= 1e-4
    assert ring_relative_error(got / sinc, data, pixels.ring) > 1e-2   # the sinc is real


def numpy_frc(model, data, ring, n_rings):
    cross = np.bincount(ring, (model * data.conj()).real, n_rings)
    power = np.bincount(ring, np.abs(model) ** 2, n_rings) * np.bincount(ring, np.abs(data) ** 2,
                                                                         n_rings)
    return np.mean(cross / np.sqrt(power))


def test_pose_gradient_matches_float64_finite_differences():
    rng = np.random.default_rng(3)
    gmm = random_gmm(rng)
    rotation, origin, dtheta, dshift = random_poses(rng, 2)
    pixels = ring_pixels(BOX, 2, 14)
    data = brute_force_spectrum(gmm, rotation, origin, np.zeros((2, 3)), np.zeros((2, 2)),
                                pixels.kx, pixels.ky, BOX, APIX)
    data += rng.normal(scale=0.3 * np.abs(data).mean(), size=data.shape)
    objective = project.make_pose_objective(gmm, pixels, APIX)
    frc, g_theta, g_shift = (t.numpy() for t in objective(
        *tensors(rotation, origin, data.real, data.imag, dtheta, dshift)))

    def score(i, d, s):
        model = brute_force_spectrum(gmm, rotation[i:i + 1], origin[i:i + 1], d[None], s[None],
                                     pixels.kx, pixels.ky, BOX, APIX)[0]
        return numpy_frc(model, data[i], pixels.ring, pixels.n_rings)

    step = 1e-4
    for i in range(2):
        assert frc[i] == pytest.approx(score(i, dtheta[i], dshift[i]), abs=1e-5)
        params = np.concatenate([dtheta[i], dshift[i]])
        numeric = []
        for m in range(5):
            e = np.zeros(5)
            e[m] = step
            plus, minus = params + e, params - e
            numeric.append((score(i, plus[:3], plus[3:]) - score(i, minus[:3], minus[3:]))
                           / (2 * step))
        analytic = np.concatenate([g_theta[i], g_shift[i]])
        np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-3 * np.abs(numeric).max())


def test_gmm_parameter_gradients_agree_between_paths():
    """The separable path's hand-written gradient against TF's autodiff of the direct sum."""
    rng = np.random.default_rng(4)
    gmm = random_gmm(rng, n=30)
    poses = tensors(*random_poses(rng, 2))
    pixels = ring_pixels(BOX, 1, 15)
    w_re, w_im = tensors(*rng.normal(size=(2, 2, len(pixels))))
    grads = {}
    for method in ("direct", "separable"):
        params = [tf.Variable(t) for t in project.gmm_tensors(gmm)]
        with tf.GradientTape() as tape:
            re, im = project.model_spectrum(*params, *poses, pixels, APIX, method)
            loss = tf.reduce_sum(w_re * re + w_im * im)
        grads[method] = [g.numpy() for g in tape.gradient(loss, params)]
    for direct, separable in zip(grads["direct"], grads["separable"]):
        np.testing.assert_allclose(separable, direct, rtol=1e-3, atol=1e-4 * np.abs(direct).max())


def test_rotation_vector_matches_scipy_and_has_finite_gradient_at_zero():
    rng = np.random.default_rng(5)
    vec = np.concatenate([rng.normal(scale=20.0, size=(5, 3)), np.zeros((1, 3)),
                          np.full((1, 3), 1e-5), [[170.0, -60.0, 20.0]]])
    got = project.rotvec_deg_to_matrix(tf.constant(vec, tf.float32)).numpy()
    np.testing.assert_allclose(got, Rotation.from_rotvec(np.radians(vec)).as_matrix(), atol=2e-6)
    zero = tf.Variable(tf.zeros([1, 3]))
    with tf.GradientTape() as tape:
        m = project.rotvec_deg_to_matrix(zero)
        s = tf.reduce_sum(m * tf.constant(rng.normal(size=(1, 3, 3)), tf.float32))
    assert np.all(np.isfinite(tape.gradient(s, zero).numpy()))


@pytest.mark.parametrize("scale_deg", [1e-3, 3.0, 60.0])
def test_rotation_vector_jacobian_matches_scipy_finite_differences(scale_deg):
    # The TensorFlow Rodrigues exists for its gradient: check that gradient, not only the value.
    vec = np.random.default_rng(6).normal(scale=scale_deg, size=(4, 3))
    variable = tf.Variable(tf.constant(vec, tf.float64))
    with tf.GradientTape() as tape:
        m = project.rotvec_deg_to_matrix(variable)
    got = tape.jacobian(m, variable).numpy()              # (4, 3, 3, 4, 3)
    got = np.stack([got[i, :, :, i, :] for i in range(len(vec))])
    step = 1e-4
    want = np.stack([(Rotation.from_rotvec(np.radians(vec + step * e)).as_matrix()
                      - Rotation.from_rotvec(np.radians(vec - step * e)).as_matrix()) / (2 * step)
                     for e in np.eye(3)], axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_pose_convention_matches_images_made_by_the_geometry_module():
    """Particles rendered in real space at (A c)_xy - o score FRC ~1 at their own pose,
    and clearly less with the shift sign or the rotation transposed (the usual slips)."""
    rng = np.random.default_rng(6)
    box = 64                                  # room enough that no mass leaves the image
    gmm = random_gmm(rng, n=60, width_lo=1.2 * APIX)
    rotation, origin, _, _ = random_poses(rng, 2)
    origin = origin + 2.0
    images = np.array([render_projection(geometry.project_points(a[None], gmm.centres_A,
                                                                 o[None])[0],
                                         gmm.amplitudes, gmm.widths_A, box, APIX)
                       for a, o in zip(rotation, origin)])
    pixels = ring_pixels(box, 2, 12)
    data = gather_rings(fft2c(images), pixels)
    objective = project.make_pose_objective(gmm, pixels, APIX)
    zeros3, zeros2 = np.zeros((2, 3)), np.zeros((2, 2))

    def frc(rot, org):
        return objective(*tensors(rot, org, data.real, data.imag, zeros3, zeros2))[0].numpy()

    assert np.all(frc(rotation, origin) > 0.999)
    assert np.all(frc(rotation, -origin) < 0.9)
    assert np.all(frc(np.transpose(rotation, (0, 2, 1)), origin) < 0.9)


def test_gradient_points_back_to_the_true_pose():
    rng = np.random.default_rng(7)
    gmm = random_gmm(rng, n=80)
    rotation, origin, _, _ = random_poses(rng, 4)
    pixels = ring_pixels(BOX, 2, 12)
    data = brute_force_spectrum(gmm, rotation, origin, np.zeros((4, 3)), np.zeros((4, 2)),
                                pixels.kx, pixels.ky, BOX, APIX)
    objective = project.make_pose_objective(gmm, pixels, APIX)
    zeros3, zeros2 = np.zeros((4, 3)), np.zeros((4, 2))
    frc, g_theta, g_shift = objective(*tensors(rotation, origin, data.real, data.imag,
                                               zeros3, zeros2))
    assert np.all(frc.numpy() > 1 - 1e-5)
    assert np.abs(g_theta.numpy()).max() < 1e-3 and np.abs(g_shift.numpy()).max() < 1e-3
    start_theta = rng.normal(scale=1.0, size=(4, 3))
    start_shift = rng.normal(scale=0.3, size=(4, 2))
    frc, g_theta, g_shift = objective(*tensors(rotation, origin, data.real, data.imag,
                                               start_theta, start_shift))
    toward = np.sum(-start_theta * g_theta.numpy(), 1) + np.sum(-start_shift * g_shift.numpy(), 1)
    assert np.all(frc.numpy() < 0.999) and np.all(toward > 0)


def test_applied_moves_are_the_moves_the_kernel_differentiates():
    rng = np.random.default_rng(8)
    gmm = random_gmm(rng, n=20)
    rotation, origin, dtheta, dshift = random_poses(rng, 3)
    pixels = ring_pixels(BOX, 1, 12)
    moved = kernel_spectrum(gmm, (rotation, origin, dtheta, dshift), pixels, "separable")
    new_rotation, new_origin = project.apply_pose_moves(rotation, origin, dtheta, dshift, APIX)
    applied = kernel_spectrum(gmm, (new_rotation, new_origin, 0 * dtheta, 0 * dshift), pixels,
                              "separable")
    assert ring_relative_error(applied, moved, pixels.ring) <= 1e-4
    assert geometry.angle_between_deg(new_rotation, rotation).min() > 0.5


def _write_angles_star(path, euler, origin_A, box, apix):
    lines = ["", "# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroupName #1",
             "_rlnOpticsGroup #2", "_rlnVoltage #3", "_rlnSphericalAberration #4",
             "_rlnAmplitudeContrast #5", "_rlnImagePixelSize #6", "_rlnImageSize #7",
             "_rlnImageDimensionality #8", f"opticsGroup1 1 300 2.7 0.1 {apix} {box} 2", "",
             "# version 30001", "", "data_particles", "", "loop_"]
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnOpticsGroup"]
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    lines += [f"{i + 1:06d}@none.mrcs {e[0]:.6f} {e[1]:.6f} {e[2]:.6f} {o[0]:.6f} {o[1]:.6f} 1"
              for i, (e, o) in enumerate(zip(euler, origin_A))]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.relion
@pytest.mark.skipif(shutil.which("relion_project") is None, reason="relion_project not installed")
def test_rendered_map_projected_by_relion_matches_our_projection(tmp_path):
    """render_map -> relion_project at RELION poses and origins agrees with the
    projection the kernel's spectrum is tested against (projected_gmm_image), and
    not with the usual slips (shift sign, transposed matrix). RELION interpolates
    in Fourier space, so agreement is judged in real space, where it is 1e-4-close."""
    rng = np.random.default_rng(9)
    box, apix = 48, 1.5
    gmm = random_gmm(rng, n=30, spread_A=7.0, width_lo=1.5, width_hi=2.5)
    write_map(tmp_path / "gmm.mrc", render_map(gmm, box, apix), apix)
    rotation = Rotation.random(3, random_state=rng).as_matrix()
    origin = rng.uniform(-4.0, 4.0, (3, 2))
    _write_angles_star(tmp_path / "angles.star", geometry.matrix_to_euler(rotation), origin, box,
                       apix)
    result = subprocess.run(["relion_project", "--i", "gmm.mrc", "--o", "proj", "--ang",
                             "angles.star"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    with mrcfile.open(tmp_path / "proj.mrcs") as mrc:
        images = np.asarray(mrc.data, float)

    def correlation(a, o, image):
        return np.corrcoef(projected_gmm_image(gmm, a, o, box, apix).ravel(), image.ravel())[0, 1]

    for a, o, image in zip(rotation, origin, images):
        assert correlation(a, o, image) > 0.999
        assert correlation(a, -o, image) < 0.95
        assert correlation(a.T, o, image) < 0.95
    np.testing.assert_allclose(images.sum(axis=(1, 2)), gmm.amplitudes.sum(), rtol=0.05)
