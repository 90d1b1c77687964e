// The claims page: sort the table by a column (click its heading; again to reverse) and show one
// verdict only. Cells with data-key sort by that key (the verdict column by the order a reader
// scans verdicts in), the others by their text. No library: the site loads nothing from elsewhere.
document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("claims");
  if (!table) return;
  const body = table.tBodies[0];
  const shown = document.getElementById("claims-shown");
  const key = (row, column) => {
    const cell = row.cells[column];
    const value = cell.dataset.key ?? cell.textContent.trim();
    return cell.dataset.key !== undefined && !isNaN(Number(value)) ? Number(value) : value.toLowerCase();
  };
  table.querySelectorAll("thead th").forEach((heading, column) => {
    heading.tabIndex = 0;
    heading.title = "sort by " + heading.textContent;
    const sort = () => {
      const ascending = heading.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach((other) => other.removeAttribute("aria-sort"));
      heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const rows = Array.from(body.rows).map((row, index) => [row, index]);
      // Stable: rows with equal keys keep the order of the lessons.
      rows.sort(([a, i], [b, j]) => {
        const x = key(a, column), y = key(b, column);
        return (x < y ? -1 : x > y ? 1 : i - j) * (ascending ? 1 : -1);
      });
      rows.forEach(([row]) => body.appendChild(row));
    };
    heading.addEventListener("click", sort);
    heading.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
  });
  const filter = document.getElementById("verdict-filter");
  const update = () => {
    let count = 0;
    Array.from(body.rows).forEach((row) => {
      const visible = !filter.value || row.dataset.verdict === filter.value;
      row.hidden = !visible;
      count += visible;
    });
    shown.textContent = ` ${count} of ${body.rows.length} claims shown`;
  };
  filter.addEventListener("change", update);
  update();
});
