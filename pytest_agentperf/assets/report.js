(function(){
"use strict";
var table=document.getElementById("tests");
if(!table){return;}
var q=document.getElementById("q"),oc=document.getElementById("oc"),
bad=document.getElementById("bad"),shown=document.getElementById("shown");
function bodies(){return Array.prototype.slice.call(table.tBodies);}
function cellValue(tb,col,type){
var v=tb.rows[0].cells[col].getAttribute("data-v")||"";
if(type==="num"){return v===""?null:parseFloat(v);}return v.toLowerCase();}
var ths=table.tHead.rows[0].cells,state={col:-1,dir:1};
function sortBy(col){
var th=ths[col],type=th.getAttribute("data-type");
state.dir=(state.col===col)?-state.dir:(type==="num"?-1:1);state.col=col;
for(var i=0;i<ths.length;i++){ths[i].classList.remove("asc","desc");}
th.classList.add(state.dir>0?"asc":"desc");
var list=bodies().map(function(tb,i){return {tb:tb,v:cellValue(tb,col,type),i:i};});
list.sort(function(a,b){
if(a.v===null&&b.v===null){return a.i-b.i;}
if(a.v===null){return 1;}if(b.v===null){return -1;}
if(a.v<b.v){return -state.dir;}if(a.v>b.v){return state.dir;}return a.i-b.i;});
list.forEach(function(x){table.appendChild(x.tb);});}
for(var c=0;c<ths.length;c++){(function(col){
ths[col].addEventListener("click",function(){sortBy(col);});
ths[col].addEventListener("keydown",function(e){if(e.key==="Enter"){sortBy(col);}});
})(c);}
function filter(){
var text=q.value.trim().toLowerCase(),o=oc.value,onlyBad=bad.checked,n=0,all=bodies();
all.forEach(function(tb){
var ok=(!text||tb.getAttribute("data-id").toLowerCase().indexOf(text)>=0)&&
(!o||tb.getAttribute("data-outcome")===o)&&(!onlyBad||tb.getAttribute("data-bad")==="1");
tb.hidden=!ok;if(ok){n++;}});
shown.textContent=n+" of "+all.length+" shown";}
q.addEventListener("input",filter);oc.addEventListener("change",filter);
bad.addEventListener("change",filter);
function setOpen(tb,open){
var b=tb.querySelector("button.toggle"),d=tb.rows[1];
d.hidden=!open;b.setAttribute("aria-expanded",open?"true":"false");
b.textContent=open?"\u25be":"\u25b8";}
table.addEventListener("click",function(e){
var t=e.target;if(!(t instanceof Element)){return;}
var row=t.closest("tr.row");if(!row||t.closest("a")){return;}
var tb=row.parentNode;setOpen(tb,tb.rows[1].hidden);});
document.getElementById("expand").addEventListener("click",function(){
bodies().forEach(function(tb){if(!tb.hidden){setOpen(tb,true);}});});
document.getElementById("collapse").addEventListener("click",function(){
bodies().forEach(function(tb){setOpen(tb,false);});});
var m=/^#open=(.*)$/.exec(location.hash);
(m?m[1].split(","):[]).forEach(function(id){
var tb=id?document.getElementById(id):null;
if(tb&&tb.parentNode===table){setOpen(tb,true);}});
})();
