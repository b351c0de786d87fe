import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';

// index.html paints a one-line shell before the script arrives (a fast first
// paint on a slow network); the app replaces it.
const target = document.getElementById('app');
target.textContent = '';
mount(App, { target });
