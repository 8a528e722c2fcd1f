"""The parameters of YOUNG's correction steps, declared once (stpipe ``spec`` syntax).

Each string is the ``spec`` of a step class (``FnoiseStep.spec`` is
:data:`FNOISE`): one line per parameter, configobj type and range, default,
and the help text as the comment.  The same declaration gives the tool's
command-line options, its help text, the validation of the ``fnoise:`` /
``wisp:`` / ``bkg:`` config sections and of ``strun`` arguments.  They live
in this light module so that a tool builds its options and checks its inputs
without importing jwst, which is slow (docs/performance.md).
"""

#: young-fnoise / FnoiseStep (young_fnoise)
FNOISE = """
    method = option('auto', 'amp', 'gradient', default='auto')  # amp: per-amplifier row medians with a full-row fallback; gradient: row differences anchored on the sky, for fields filled by extended light; auto: amp
    mask_preset = option('compact', 'young', 'ceers', default='compact')  # tiered source-mask preset: compact (sources where they move a row median), young (aggressive, protects ICL) or ceers
    mask_thresh = float(min=0.001, max=1, default=0.8)  # amp: an amplifier row more than this fraction masked takes the full-row value
    flat = boolean(default=True)  # rate files: measure through the CRDS FLAT reference (off: on the rate itself)
    user_mask = string(default=None)  # also mask the nonzero pixels of this FITS image (same shape, or full frame for subarrays), e.g. cluster light
    wisp_templates = string(default=None)  # wisp template folder (default: the config's wisp_directory): on A3/A4/B3/B4 the stripes are measured beside a provisional wisp fit, the wisp is left for young-wisp
    wisp_model = boolean(default=True)  # fit the wisp beside the stripes when a template applies
    extended_mask = boolean(default=True)  # also mask smooth extended light (ICL, large haloes) before measuring the stripes
    clip_sigma = float(min=0.5, default=3.0)  # sigma clipping of every row and column median (sigma)
    clip_maxiters = integer(min=0, default=5)  # clipping iterations
    fallback_k = float(min=0, default=6.0)  # amp: an amplifier row further than this many expected errors from the full row takes the full-row value (0: never)
    fallback_interp = boolean(default=True)  # amp: a fallback row keeps the amplifier's deviation interpolated from its neighbours
    fallback_blend = boolean(default=True)  # amp: a mostly masked row combines its own median and the fallback value by inverse variance
    row_segments = integer(min=1, max=16, default=8)  # amp: segments per amplifier row for the 1/f that varies along the row (1: a constant per row)
    columns = boolean(default=True)  # also measure and subtract the column pattern
    bright_percentile = float(min=1, max=100, default=98.0)  # gradient: pixels above this percentile are left out of the differences
    grad_mask_thresh = float(min=0.001, max=1, default=0.75)  # gradient: an amplifier segment more than this fraction excluded uses whole-row differences
    anchor_step = integer(min=1, default=4)  # gradient: rows between the anchors that tie the profile to the sky level
    hp_scale = float(min=0, default=32.0)  # gradient: rows below which the profile comes from the differences alone
    anchor_estimator = option('mode', 'median', default='mode')  # gradient: sky level of an anchor window
    save_correction = boolean(default=False)  # also write the subtracted pattern, X_1f_rate_model.fits
    save_mask = boolean(default=False)  # also write the measurement mask, X_1f_rate_mask.fits (1 source, 2 bad)
    plot = boolean(default=False)  # also write a QA plot, X_1f_rate.png (before, after, pattern, row profiles)
"""

#: young-wisp / WispStep (young_wisp)
WISP = """
    wisp_templates = string(default=None)  # folder of WISP_{DETECTOR}_{FILTER}_{PUPIL}.fits templates (default: the config's wisp_directory)
    scale = float(default=None)  # force the template scale instead of fitting it
    flag_threshold = float(min=0, default=None)  # flag pixels whose wisp model exceeds this (data units) in DQ instead of subtracting
    bounds = float_list(min=2, max=2, default=list(0.0, 2.0))  # range of the fitted scale, LO,HI
    statistic = option('biweight', 'mad', default='biweight')  # robust scatter minimised by the fit: biweight midvariance, or mad (median absolute deviation)
    mask_preset = option('young', 'ceers', 'compact', default='young')  # tiered source-mask preset
    dilate = float(min=0, default=3.0)  # dilation of the mapped long-wave mask (short-wave pixels)
    lw_dirs = string_list(default=list())  # also look in these folders for the long-wave partner (default: beside the input only)
    use_lw = boolean(default=True)  # mask sources with the long-wave partner's mask
    save_correction = boolean(default=False)  # also write the subtracted model and the fit's mask, X_wisp_cal_model.fits
    plot = boolean(default=False)  # also write a QA plot, X_wisp_cal.png (before, model, after, scatter vs scale)
"""

#: young-bkg / BkgStep (young_bkg)
BKG = """
    mode = option('pedestal', '2d', default='pedestal')  # pedestal: one robust sky value; 2d: a smooth large-box model, for gradients
    mask_preset = option('young', 'ceers', 'compact', default='young')  # tiered source-mask preset: young (aggressive, protects ICL), ceers or compact
    tier_kernel_size = float_list(default=None)  # Gaussian smoothing sigma (px) of each tier (overrides the preset)
    tier_npixels = int_list(default=None)  # minimum connected area (px) of a detection in each tier (overrides the preset)
    tier_nsigma = float_list(default=None)  # detection threshold (robust sigma) of each tier (overrides the preset)
    tier_dilate_size = float_list(default=None)  # dilation radius (px) of each tier's detections, 0 = none (overrides the preset)
    ring_radius_in = float(min=1, default=None)  # inner radius of the ring median filter (px; preset: 40)
    ring_width = float(min=1, default=None)  # width of the ring median filter (px; preset: 3)
    box = integer(min=8, default=256)  # 2d mode: box size of the background mesh (px)
    save_mask = boolean(default=False)  # also write the mask used, X_bkg_cal_mask.fits (1 = not sky)
    plot = boolean(default=False)  # also write a QA plot, X_bkg_cal.png (image, mask, model, sky histogram)
"""


def section_params() -> dict[str, list[str]]:
    """The parameter names of the correction steps: the keys their config sections take besides the top-level ones."""
    from young.contract.spec import parse_spec

    return {"fnoise": list(parse_spec(FNOISE)), "wisp": list(parse_spec(WISP)), "bkg": list(parse_spec(BKG))}
