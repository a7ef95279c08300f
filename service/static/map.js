// The /map page: MapLibre GL JS showing /v1/tiles/style.json, fitted to the border. The form
// reloads the style with start/end/kind filters; a click shows a feature's properties.
// The map is window.map, so that tests (and curious users) can drive it from the console.
"use strict";

(() => {
  const FILTERS = ["start", "end", "kind"];
  const INSTANTS = new Set(["start", "end"]);
  // The style draws each group in a layer per class ("segments-10", "points-crossing"): a
  // layer's group is its id up to the first dash.
  const QUERIED_LAYERS = ["points", "clusters", "segments"];
  const groupOf = (id) => id.split("-")[0];
  const groupLayers = () =>
    map.getStyle().layers.map((layer) => layer.id).filter((id) => QUERIED_LAYERS.includes(groupOf(id)));
  const CAPTIONS = { points: "Report", clusters: "Reports near here", segments: "Border segment" };
  const container = document.getElementById("map");
  const form = document.getElementById("filters");
  const status = document.getElementById("status");
  const styleBase = new URL(container.dataset.style, window.location.href);

  // datetime-local inputs hold local wall-clock time; the API takes RFC 3339 instants.
  const toInstant = (local) => new Date(local).toISOString();
  const toLocal = (instant) => {
    const t = new Date(instant);
    if (Number.isNaN(t.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    const date = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
    return `${date}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
  };

  const styleUrl = (filters) => {
    const url = new URL(styleBase);
    url.search = filters.toString();
    return url.href;
  };

  const formFilters = () => {
    const filters = new URLSearchParams();
    for (const name of FILTERS) {
      const value = form.elements[name].value;
      if (value) filters.set(name, INSTANTS.has(name) ? toInstant(value) : value);
    }
    return filters;
  };

  // /map?start=...&kind=... opens filtered: the form shows the filters, and they go to the first
  // style as given (the form's minutes would round them).
  const initial = new URLSearchParams(window.location.search);
  const firstFilters = new URLSearchParams();
  for (const name of FILTERS) {
    const value = initial.get(name);
    if (!value) continue;
    firstFilters.set(name, value);
    form.elements[name].value = INSTANTS.has(name) ? toLocal(value) : value;
  }

  // An API key, if the user gives one, is kept for this tab only and sent with every request
  // to this server (never elsewhere); without one the map shows what the public may see.
  const KEY = "crossingsKey";
  form.elements.key.value = sessionStorage.getItem(KEY) || "";
  const transformRequest = (url) => {
    const key = sessionStorage.getItem(KEY);
    if (key && new URL(url, window.location.href).origin === window.location.origin) {
      return { url, headers: { Authorization: `Bearer ${key}` } };
    }
    return { url };
  };

  const map = new maplibregl.Map({
    container,
    transformRequest,
    style: styleUrl(firstFilters),
    bounds: JSON.parse(container.dataset.bounds),
    fitBoundsOptions: { padding: 24 },
  });
  window.map = map;
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");

  // A rejected filter comes back as a problem+json 400 from /v1/tiles.json: show its detail.
  map.on("error", async (event) => {
    const error = event.error || {};
    let message = error.message || "the map could not load";
    try {
      if (error.body && error.body.text) message = JSON.parse(await error.body.text()).detail;
    } catch (_) {
      // not a problem document: keep the message
    }
    status.textContent = message;
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const filters = formFilters();
    const key = form.elements.key.value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
    status.textContent = "";
    map.setStyle(styleUrl(filters));
    const query = filters.toString();
    window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
  });

  const propertyTable = (feature) => {
    const table = document.createElement("table");
    table.className = "properties";
    const caption = table.createCaption();
    caption.textContent = CAPTIONS[groupOf(feature.layer.id)];
    for (const [name, value] of Object.entries(feature.properties)) {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = String(value);
    }
    return table;
  };

  map.on("click", (event) => {
    const { x, y } = event.point;
    const box = [
      [x - 5, y - 5],
      [x + 5, y + 5],
    ];
    // Points first, then clusters, then segments: the order of QUERIED_LAYERS.
    const layers = groupLayers();
    const found = map.queryRenderedFeatures(box, { layers });
    const rank = (f) => QUERIED_LAYERS.indexOf(groupOf(f.layer.id));
    const [feature] = found.sort((a, b) => rank(a) - rank(b));
    if (!feature) return;
    new maplibregl.Popup({ maxWidth: "24em" })
      .setLngLat(event.lngLat)
      .setDOMContent(propertyTable(feature))
      .addTo(map);
  });

  map.on("mousemove", (event) => {
    const layers = groupLayers();
    const over = layers.length && map.queryRenderedFeatures(event.point, { layers }).length;
    map.getCanvas().style.cursor = over ? "pointer" : "";
  });
})();
