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

// The service worker shows push notifications (public/sw.js); a tap on one
// while the page is open asks it to show that session.
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => {
    // No notifications on this browser; the settings say so.
  });
  navigator.serviceWorker.addEventListener('message', (e) => {
    if (e.data?.type !== 'breakglass-open' || typeof e.data.url !== 'string') return;
    const u = new URL(e.data.url, location.origin);
    if (u.origin === location.origin && u.hash !== location.hash) location.hash = u.hash;
  });
}
