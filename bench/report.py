"""Text tables of benchmark results."""


def format_value(value, unit):
    if value is None:
        return "-"
    if unit == "KiB":
        return f"{value / 1024:.1f} MiB"
    return f"{value:.3f} s"


def format_ratio(numerator, denominator):
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def render_case(result):
    """Return the table of one CaseResult.

    `ratio` is the median of the layerlab row named in `numerators`, else
    of the case's primary row, divided by this row's median. Each layerlab
    row with a target gets an extra line that compares it with the target.
    """
    header = ["tool", "median", "min", "ratio"]
    if result.megabytes:
        header.append("MB/s")
    rows = []
    for label, series in result.series.items():
        if series.error:
            rows.append([label, "unavailable: " + series.error])
            continue
        numerator_label = result.numerators.get(label, result.primary)
        numerator = result.series.get(numerator_label)
        ratio = ""
        if numerator is not None and not label.startswith("layerlab"):
            ratio = format_ratio(numerator.median, series.median)
        row = [label, format_value(series.median, series.unit), format_value(series.minimum, series.unit), ratio]
        if result.megabytes:
            row.append(f"{result.megabytes / series.median:.0f}")
        rows.append(row)

    for label, (target, basis) in result.targets.items():
        series = result.series.get(label)
        if series is None or series.error:
            continue
        row = [f"target for {label}: {basis}", format_value(target, "s"), "", format_ratio(series.median, target)]
        if result.megabytes:
            row.append(f"{result.megabytes / target:.0f}")
        rows.append(row)

    full_rows = [header] + [row for row in rows if len(row) == len(header)]
    widths = [max(len(str(row[i])) for row in full_rows) for i in range(len(header))]
    lines = [f"== {result.name}: {result.title}", format_row(header, widths)]
    for row in rows:
        lines.append(row[0].ljust(widths[0]) + "  " + row[1] if len(row) == 2 else format_row(row, widths))
    numerator = "the matching layerlab row" if result.numerators else result.primary
    better = "uses less" if result.series and next(iter(result.series.values())).unit == "KiB" else "is faster"
    lines.append(f"ratio = {numerator} / row (below 1: layerlab {better})")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def format_row(row, widths):
    cells = [str(row[0]).ljust(widths[0])] + [str(cell).rjust(width) for cell, width in zip(row[1:], widths[1:])]
    return "  ".join(cells)
