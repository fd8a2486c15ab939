document.querySelector("h1").dataset.loaded = "yes";
