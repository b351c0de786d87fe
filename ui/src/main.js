import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';

// index.html paints a one-line shell before the script arrives (a fast first
// paint on a slow network); the app replaces it.
// The layout is as tall as the visible viewport: 100dvh, or where the
// browser does not shrink it for the on-screen keyboard (iOS), the visual
// viewport's height, so the composer stays above the keyboard.
const vv = window.visualViewport;
if (vv) {
  const fit = () => {
    if (vv.scale === 1) document.documentElement.style.setProperty('--vvh', `${Math.round(vv.height)}px`);
  };
  vv.addEventListener('resize', fit);
  fit();
}

const target = document.getElementById('app');
target.textContent = '';
mount(App, { target });
